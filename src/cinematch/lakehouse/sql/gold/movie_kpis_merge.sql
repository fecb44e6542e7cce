-- gold.movie_kpis, incremental form: every movie's stored sums plus the new batches' ratings.
--
-- The same columns and definitions as movie_kpis.sql (which a full refresh runs; a test proves both agree).
-- Inputs besides silver.movies: _gold_new (the silver rows of the new batches), _silver_replaced (the older
-- rows they replaced) and gold.movie_kpis as built before the batch. Ratings are half steps, so the stored mean
-- and standard deviation give back the exact sums: n * mean is a multiple of 0.5, and the sum of squares,
-- (n - 1) * stddev^2 + sum^2 / n, a multiple of 0.25.

with

params as (
    select cast($as_of as timestamp) as as_of, cast($prior_weight as double) as prior_weight
),

movies as (
    select movie_id, title, release_year, is_placeholder from silver.movies
),

stored as (
    select
        movie_id,
        n_ratings,
        coalesce(round(avg_rating * n_ratings * 2) / 2, 0) as sum_rating,
        case
            when n_ratings >= 2
                then round(((n_ratings - 1) * stddev_rating * stddev_rating
                    + avg_rating * avg_rating * n_ratings) * 4) / 4
            when n_ratings = 1 then avg_rating * avg_rating
            else 0
        end as sum_squares
    from gold.movie_kpis
),

changes as (
    select movie_id, 1 as n_ratings, rating as sum_rating, rating * rating as sum_squares from _gold_new
    union all
    select movie_id, -1, -rating, -rating * rating from _silver_replaced
    union all
    select movie_id, n_ratings, sum_rating, sum_squares from stored
),

movie_stats as (
    select movie_id, sum(n_ratings) as n_ratings, sum(sum_rating) as sum_rating, sum(sum_squares) as sum_squares
    from changes
    group by movie_id
    having sum(n_ratings) > 0
),

-- @include movie_kpis_columns
