-- gold.user_genre_masks: the listed genres each user has rated, as bit masks (state of incremental gold).
--
-- One row per (user_id, word): bit b of word w stands for the (62 * w + b)-th listed genre in name order, as in
-- user_engagement.sql. Not a table for analysts: incremental runs OR the new ratings' genres into it, so
-- user_engagement's genre_diversity does not have to read every rating of every user the batch touched.

with

params as (
    select coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of
),

ratings as (
    select r.user_id, r.movie_id
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

movies as (
    select movie_id, genres from silver.movies
),

-- @include listed_genre_masks

-- @include user_masks

final as (
    select u.user_id, u.word, u.mask, p.as_of
    from user_masks as u
    cross join params as p
)

select * from final
