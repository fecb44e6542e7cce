-- gold.user_month_genre_masks: the genres each user rated in each month, as bit masks (state of incremental gold).
--
-- One row per (user_id, year, month, word), bits as in genre_analytics.sql ('(no genres listed)' has a bit of
-- its own there). Not a table for analysts: incremental runs OR the new ratings' genres into it, and the bits a
-- batch newly sets are the users it adds to genre_analytics.n_users.

with

params as (
    select coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of
),

ratings as (
    select
        r.user_id,
        r.movie_id,
        cast(extract(year from r.rated_at) as integer) as year,
        cast(extract(month from r.rated_at) as integer) as month
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

movies as (
    select movie_id, genres from silver.movies
),

-- @include movie_genres

-- @include genre_masks

-- @include user_month_masks

final as (
    select u.user_id, u.year, u.month, u.word, u.mask, p.as_of
    from user_month_masks as u
    cross join params as p
)

select * from final
