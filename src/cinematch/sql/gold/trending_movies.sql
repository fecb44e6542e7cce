-- gold.trending_movies: one row per (movie_id, window) for the windows 7d, 30d and 90d ending at $as_of.
--
-- Current window: (as_of - w, as_of]; previous window: (as_of - 2w, as_of - w]. Only movies with at least one
-- rating in the current window appear. $as_of defaults to the newest silver rated_at when null.
--   velocity         = (n_ratings - n_ratings_prev) / greatest(n_ratings_prev, 1)
--   bayesian_rating  = ($prior_weight * m + sum of the window's ratings) / ($prior_weight + n_ratings), with m the
--                      mean of all ratings up to as_of (shrinks a 1-rating 5.0 toward the catalogue mean)
--   trending_score   = (n_ratings / window_days)                 -- ratings per day: comparable across windows
--                    * (bayesian_rating / 5)                       -- quality in (0, 1]
--                    * (1 + ln(1 + greatest(velocity, 0)))         -- momentum bonus, log-damped so a movie going
--                                                                  -- from 0 to 50 ratings gets x4.9, not x51
--   trending_rank    = row_number() within the window by trending_score desc, n_ratings desc, movie_id asc
--                      (unique, deterministic ranks)
-- "window" is a reserved word in most dialects, hence quoted.

with

params as (
    select
        coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of,
        cast($prior_weight as double) as prior_weight
),

ratings as (
    select r.movie_id, r.rating, r.rated_at
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

movies as (
    select movie_id, title from silver.movies
),

windows as (
    select
        '7d' as window_label,
        7 as window_days,
        as_of - interval '14' day as prev_start,
        as_of - interval '7' day as window_start,
        as_of as window_end
    from params
    union all
    select '30d', 30, as_of - interval '60' day, as_of - interval '30' day, as_of from params
    union all
    select '90d', 90, as_of - interval '180' day, as_of - interval '90' day, as_of from params
),

global_mean as (
    select avg(rating) as global_mean from ratings
),

windowed_ratings as (
    select
        w.window_label,
        w.window_days,
        w.window_start,
        w.window_end,
        r.movie_id,
        r.rating,
        case when r.rated_at > w.window_start then 1 else 0 end as in_current
    from ratings as r
    inner join windows as w on r.rated_at > w.prev_start and r.rated_at <= w.window_end
),

movie_windows as (
    select
        window_label,
        window_days,
        window_start,
        window_end,
        movie_id,
        sum(in_current) as n_ratings,
        sum(case when in_current = 1 then rating else 0 end) as sum_rating,
        avg(case when in_current = 1 then rating end) as avg_rating,
        sum(1 - in_current) as n_ratings_prev,
        avg(case when in_current = 0 then rating end) as avg_rating_prev
    from windowed_ratings
    group by window_label, window_days, window_start, window_end, movie_id
),

scored as (
    select
        mw.window_label,
        mw.window_days,
        mw.window_start,
        mw.window_end,
        mw.movie_id,
        mw.n_ratings,
        mw.avg_rating,
        mw.n_ratings_prev,
        mw.avg_rating_prev,
        cast(mw.n_ratings - mw.n_ratings_prev as double) / greatest(mw.n_ratings_prev, 1) as velocity,
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
            * (1.0 + ln(1.0 + greatest(s.velocity, 0.0))) as trending_score
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
        t.bayesian_rating,
        t.trending_score,
        row_number() over (
            partition by t.window_days
            order by t.trending_score desc, t.n_ratings desc, t.movie_id asc
        ) as trending_rank,
        t.window_start,
        t.window_end,
        t.as_of
    from trend_scores as t
    left join movies as m on t.movie_id = m.movie_id
)

select * from final
