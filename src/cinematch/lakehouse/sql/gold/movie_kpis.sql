-- gold.movie_kpis: one row per movie of silver.movies (unrated movies included with n_ratings 0).
--
-- Only ratings with rated_at <= $as_of count; $as_of defaults to the newest silver rated_at when null.
--   stddev_rating    = sample standard deviation; null below 2 ratings
--   bayesian_rating  = ($prior_weight * m + sum of ratings) / ($prior_weight + n_ratings), m = mean of all ratings
--                      up to as_of; an unrated movie gets m (null if $prior_weight is 0)
--   popularity_rank  = row_number() by n_ratings desc, movie_id asc: unique ranks 1..N, ties go to the lower id

with

params as (
    select
        coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of,
        cast($prior_weight as double) as prior_weight
),

ratings as (
    select r.movie_id, r.rating
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

movies as (
    select movie_id, title, release_year, is_placeholder from silver.movies
),

movie_stats as (
    -- ratings are half steps, so these sums are exact in any order: the incremental form
    -- (movie_kpis_merge.sql) keeps them and gets the same mean and standard deviation to the last bit
    select
        movie_id,
        count(*) as n_ratings,
        sum(rating) as sum_rating,
        sum(rating * rating) as sum_squares
    from ratings
    group by movie_id
),

-- @include movie_kpis_columns
