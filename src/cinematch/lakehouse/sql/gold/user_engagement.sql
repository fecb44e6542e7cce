-- gold.user_engagement: one row per user with at least one rating up to $as_of.
--
-- Only ratings with rated_at <= $as_of count; $as_of defaults to the newest silver rated_at when null.
--   active_days       = distinct calendar dates of rated_at
--   genre_diversity   = distinct listed genres over the movies the user rated; '(no genres listed)' is the absence
--                       of a genre, so placeholders add nothing (a user who only rated placeholders has 0)
--   high_rating_share = share of the user's ratings with rating >= 4.0

with

params as (
    select coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of
),

ratings as (
    select r.user_id, r.movie_id, r.rating, r.rated_at
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

movies as (
    select movie_id, genres from silver.movies
),

-- @include listed_genre_masks

user_stats as (
    select
        user_id,
        count(*) as n_ratings,
        min(rated_at) as first_rated_at,
        max(rated_at) as last_rated_at,
        avg(rating) as avg_rating,
        cast(sum(case when rating >= 4.0 then 1 else 0 end) as double) / count(*) as high_rating_share
    from ratings
    group by user_id
),

user_days as (
    -- distinct first, then count: much cheaper than count(distinct ...) per user
    select user_id, count(*) as active_days
    from (select distinct user_id, cast(rated_at as date) as rated_on from ratings) as d
    group by user_id
),

-- @include user_masks

user_genres as (
    select u.user_id, count(*) as genre_diversity
    from user_masks as u
    inner join genre_bits as b on u.word = b.word and (u.mask & b.bit) <> 0
    group by u.user_id
),

final as (
    select
        s.user_id,
        s.n_ratings,
        d.active_days,
        s.first_rated_at,
        s.last_rated_at,
        s.avg_rating,
        coalesce(g.genre_diversity, 0) as genre_diversity,
        s.high_rating_share,
        p.as_of
    from user_stats as s
    inner join user_days as d on s.user_id = d.user_id
    left join user_genres as g on s.user_id = g.user_id
    cross join params as p
)

select * from final
