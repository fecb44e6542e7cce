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

final as (
    select r.user_id, r.year, r.month, coalesce(mm.word, n.word) as word, bit_or(coalesce(mm.mask, n.bit)) as mask,
        p.as_of
    from ratings as r
    left join movie_masks as mm on r.movie_id = mm.movie_id
    cross join no_genre_bit as n
    cross join params as p
    group by r.user_id, r.year, r.month, coalesce(mm.word, n.word), p.as_of
)

select * from final
