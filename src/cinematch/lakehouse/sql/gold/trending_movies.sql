-- gold.trending_movies: one row per (movie_id, window) for the windows 7d, 30d and 90d ending at $as_of.
--
-- Current window: (as_of - w, as_of]; previous window: (as_of - 2w, as_of - w]. Only movies with at least one
-- rating in the current window appear. $as_of defaults to the newest silver rated_at when null.
--   is_new           = no rating in the previous window (n_ratings_prev = 0)
--   velocity         = (n_ratings - n_ratings_prev) / n_ratings_prev; null when is_new: growth from nothing has
--                      no ratio (dividing by 1 instead made every brand-new movie's velocity its own count)
--   window_complete  = the data covers this window and the previous one: the first silver rating is at or before
--                      as_of - 2w. False when the data begins inside either window, so the counts of the window,
--                      and velocity, compare with a period that was not fully observed.
--   bayesian_rating  = ($prior_weight * m + sum of the window's ratings) / ($prior_weight + n_ratings), with m the
--                      mean of all ratings up to as_of (shrinks a 1-rating 5.0 toward the catalogue mean)
--   trending_score   = (n_ratings / window_days)                 -- ratings per day: comparable across windows
--                    * (bayesian_rating / 5)                       -- quality in (0, 1]
--                    * (1 + ln(1 + greatest(velocity, 0)))         -- momentum bonus, log-damped so a movie going
--                                                                  -- from 10 to 50 ratings gets x2.6, not x5
--                    A new movie (velocity null) gets no momentum bonus (factor 1): it is ranked by its rating
--                    rate and quality alone, so newness by itself never outranks steady demand.
--   trending_rank    = row_number() within the window by trending_score desc, n_ratings desc, movie_id asc
--                      (unique, deterministic ranks)
-- "window" is a reserved word in most dialects, hence quoted.

with

params as (
    select
        coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of,
        cast($prior_weight as double) as prior_weight,
        (select min(rated_at) from silver.ratings) as data_start
),

ratings as (
    -- band: each rating of the last 180 days falls in one band between consecutive window edges: (0, 7],
    -- (7, 14], (14, 30], (30, 60], (60, 90], (90, 180] days before as_of, named by the outer edge
    select
        r.movie_id,
        r.rating,
        case
            when r.rated_at > p.as_of - interval '7' day then 7
            when r.rated_at > p.as_of - interval '14' day then 14
            when r.rated_at > p.as_of - interval '30' day then 30
            when r.rated_at > p.as_of - interval '60' day then 60
            when r.rated_at > p.as_of - interval '90' day then 90
            when r.rated_at > p.as_of - interval '180' day then 180
        end as band
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

movies as (
    select movie_id, title from silver.movies
),

windows as (
    -- window_complete: the data begins no later than the start of the previous window (as_of - 2w)
    select
        '7d' as window_label,
        7 as window_days,
        as_of - interval '7' day as window_start,
        as_of as window_end,
        coalesce(data_start <= as_of - interval '14' day, false) as window_complete
    from params
    union all
    select '30d', 30, as_of - interval '30' day, as_of, coalesce(data_start <= as_of - interval '60' day, false)
    from params
    union all
    select '90d', 90, as_of - interval '90' day, as_of, coalesce(data_start <= as_of - interval '180' day, false)
    from params
),

global_mean as (
    select avg(rating) as global_mean from ratings
),

bands as (
    -- one pass sums every movie's ratings per band; the windows then add bands up, instead of joining each
    -- rating to each window
    select movie_id, band, count(*) as n_ratings, sum(rating) as sum_rating
    from ratings
    where band is not null
    group by movie_id, band
),

band_windows as (
    -- the bands that make up each window (in_current = 1) and the window of the same length before it
    select 7 as window_days, 7 as band, 1 as in_current
    union all select 7, 14, 0
    union all select 30, 7, 1
    union all select 30, 14, 1
    union all select 30, 30, 1
    union all select 30, 60, 0
    union all select 90, 7, 1
    union all select 90, 14, 1
    union all select 90, 30, 1
    union all select 90, 60, 1
    union all select 90, 90, 1
    union all select 90, 180, 0
),

movie_windows as (
    select
        w.window_label,
        w.window_days,
        w.window_start,
        w.window_end,
        w.window_complete,
        b.movie_id,
        sum(case when bw.in_current = 1 then b.n_ratings else 0 end) as n_ratings,
        sum(case when bw.in_current = 1 then b.sum_rating else 0 end) as sum_rating,
        sum(case when bw.in_current = 0 then b.n_ratings else 0 end) as n_ratings_prev,
        sum(case when bw.in_current = 0 then b.sum_rating else 0 end) as sum_rating_prev
    from bands as b
    inner join band_windows as bw on b.band = bw.band
    inner join windows as w on bw.window_days = w.window_days
    group by w.window_label, w.window_days, w.window_start, w.window_end, w.window_complete, b.movie_id
),

scored as (
    select
        mw.window_label,
        mw.window_days,
        mw.window_start,
        mw.window_end,
        mw.window_complete,
        mw.movie_id,
        mw.n_ratings,
        mw.sum_rating / mw.n_ratings as avg_rating,
        mw.n_ratings_prev,
        mw.sum_rating_prev / nullif(mw.n_ratings_prev, 0) as avg_rating_prev,
        mw.n_ratings_prev = 0 as is_new,
        case
            when mw.n_ratings_prev > 0 then cast(mw.n_ratings - mw.n_ratings_prev as double) / mw.n_ratings_prev
        end as velocity,
        (p.prior_weight * g.global_mean + mw.sum_rating) / nullif(p.prior_weight + mw.n_ratings, 0)
            as bayesian_rating,
        p.as_of
    from movie_windows as mw
    cross join params as p
    cross join global_mean as g
    where mw.n_ratings > 0
),

trend_scores as (
    select
        s.*,
        cast(s.n_ratings as double) / s.window_days
            * (s.bayesian_rating / 5.0)
            * (1.0 + ln(1.0 + greatest(coalesce(s.velocity, 0.0), 0.0))) as trending_score
    from scored as s
),

final as (
    select
        t.movie_id,
        m.title,
        t.window_days,
        t.window_label as "window",
        t.n_ratings,
        t.avg_rating,
        t.n_ratings_prev,
        t.avg_rating_prev,
        t.velocity,
        t.is_new,
        t.bayesian_rating,
        t.trending_score,
        row_number() over (
            partition by t.window_days
            order by t.trending_score desc, t.n_ratings desc, t.movie_id asc
        ) as trending_rank,
        t.window_start,
        t.window_end,
        t.window_complete,
        t.as_of
    from trend_scores as t
    left join movies as m on t.movie_id = m.movie_id
)

select * from final
