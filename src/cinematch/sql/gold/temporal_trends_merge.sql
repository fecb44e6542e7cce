-- gold.temporal_trends, incremental form: the stored yearly sums per genre plus the new batches' ratings.
--
-- The same columns and definitions as temporal_trends.sql (which a full refresh runs; a test proves both
-- agree). Inputs besides silver.movies: _gold_new (the silver rows of the new batches), _silver_replaced (the
-- older rows they replaced) and gold.temporal_trends as built before the batch. Ratings are half steps, so
-- n_ratings * avg_rating gives back each stored sum exactly.

with

params as (
    select cast($as_of as timestamp) as as_of
),

movies as (
    select movie_id, genres from silver.movies
),

-- @include movie_genres

changed_movie_years as (
    select movie_id, year, sum(n_ratings) as n_ratings, sum(sum_rating) as sum_rating
    from (
        select movie_id, cast(extract(year from rated_at) as integer) as year, 1 as n_ratings, rating as sum_rating
        from _gold_new
        union all
        select movie_id, cast(extract(year from rated_at) as integer), -1, -rating
        from _silver_replaced
    ) as c
    group by movie_id, year
),

changes as (
    select coalesce(g.genre, '(no genres listed)') as genre, c.year, c.n_ratings, c.sum_rating
    from changed_movie_years as c
    left join movie_genres as g on c.movie_id = g.movie_id
    union all
    select 'ALL' as genre, year, n_ratings, sum_rating from changed_movie_years
    union all
    select genre, year, n_ratings, round(avg_rating * n_ratings * 2) / 2 as sum_rating from gold.temporal_trends
),

yearly as (
    select genre, year, sum(n_ratings) as n_ratings, sum(sum_rating) / sum(n_ratings) as avg_rating
    from changes
    group by genre, year
    having sum(n_ratings) > 0
),

-- @include yearly_trends_columns
