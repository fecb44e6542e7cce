-- gold.user_engagement, incremental form: the new rows of the users a batch touched, merged into their old rows.
--
-- The same columns and definitions as user_engagement.sql (which a full refresh runs; a test proves both agree).
-- Inputs besides silver: _gold_new, the silver rows of the new batches (user_id, movie_id, rating, rated_at,
-- batch_id); _silver_replaced, the older silver rows those batches replaced (same key, so same user, movie and
-- day: they change counts and sums, never days, genres or first/last); gold.user_engagement as built before
-- the batch; gold.user_genre_masks, the genres each user rated, new ratings included.
-- Sums and counts come back exactly from the stored means and shares: ratings are half steps, so
-- n_ratings * avg_rating is a multiple of 0.5 and n_ratings * high_rating_share a whole number.
-- $since is the first day of the new rows: older ratings cannot share a day with them.

with

params as (
    select cast($as_of as timestamp) as as_of, cast($since as timestamp) as since
),

added as (
    select
        user_id,
        count(*) as n_ratings,
        sum(rating) as sum_rating,
        sum(case when rating >= 4.0 then 1 else 0 end) as n_high,
        min(rated_at) as first_rated_at,
        max(rated_at) as last_rated_at
    from _gold_new
    group by user_id
),

removed as (
    select
        user_id,
        count(*) as n_ratings,
        sum(rating) as sum_rating,
        sum(case when rating >= 4.0 then 1 else 0 end) as n_high
    from _silver_replaced
    group by user_id
),

earlier_days as (
    -- the days each user already had: older silver rows from $since on, plus the rows the batch replaced
    select r.user_id, cast(r.rated_at as date) as rated_on
    from silver.ratings as r
    cross join params as p
    where r.rated_at >= p.since and r.batch_id not in (select distinct batch_id from _gold_new)
    union
    select user_id, cast(rated_at as date) as rated_on from _silver_replaced
),

new_days as (
    select n.user_id, count(*) as n_days
    from (select distinct user_id, cast(rated_at as date) as rated_on from _gold_new) as n
    left join earlier_days as e on n.user_id = e.user_id and n.rated_on = e.rated_on
    where e.user_id is null
    group by n.user_id
),

movies as (
    select movie_id, genres from silver.movies
),

-- @include listed_genre_masks

user_genres as (
    -- gold.user_genre_masks already holds the new ratings' genres (incremental.py updates it first)
    select u.user_id, count(*) as genre_diversity
    from gold.user_genre_masks as u
    inner join genre_bits as b on u.word = b.word and (u.mask & b.bit) <> 0
    where u.user_id in (select user_id from added)
    group by u.user_id
),

merged as (
    select
        a.user_id,
        coalesce(o.n_ratings, 0) + a.n_ratings - coalesce(x.n_ratings, 0) as n_ratings,
        coalesce(o.active_days, 0) + coalesce(d.n_days, 0) as active_days,
        least(coalesce(o.first_rated_at, a.first_rated_at), a.first_rated_at) as first_rated_at,
        greatest(coalesce(o.last_rated_at, a.last_rated_at), a.last_rated_at) as last_rated_at,
        coalesce(round(o.avg_rating * o.n_ratings * 2) / 2, 0) + a.sum_rating - coalesce(x.sum_rating, 0)
            as sum_rating,
        coalesce(round(o.high_rating_share * o.n_ratings), 0) + a.n_high - coalesce(x.n_high, 0) as n_high
    from added as a
    left join gold.user_engagement as o on a.user_id = o.user_id
    left join removed as x on a.user_id = x.user_id
    left join new_days as d on a.user_id = d.user_id
),

final as (
    select
        m.user_id,
        m.n_ratings,
        m.active_days,
        m.first_rated_at,
        m.last_rated_at,
        m.sum_rating / m.n_ratings as avg_rating,
        coalesce(g.genre_diversity, 0) as genre_diversity,
        cast(m.n_high as double) / m.n_ratings as high_rating_share,
        p.as_of
    from merged as m
    left join user_genres as g on m.user_id = g.user_id
    cross join params as p
)

select * from final
