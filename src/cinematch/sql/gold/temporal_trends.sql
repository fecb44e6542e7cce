-- gold.temporal_trends: one row per (year, genre) of rated_at, plus genre 'ALL' per year (every rating once).
--
-- Only ratings with rated_at <= $as_of count; $as_of defaults to the newest silver rated_at when null.
-- Genres as in genre_analytics (multi-genre ratings count for each genre; empty lists -> '(no genres listed)').
--   yoy_volume_change     = (n_ratings - n_ratings of year - 1) / n_ratings of year - 1   (relative change)
--   yoy_avg_rating_change = avg_rating - avg_rating of year - 1                           (difference)
-- Both compare with the calendar year before (not merely the previous row), so they are null for the genre's
-- first year and for any year whose previous year had no ratings of that genre.

with

params as (
    select coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of
),

ratings as (
    select
        r.movie_id,
        r.rating,
        cast(extract(year from r.rated_at) as integer) as year
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

movies as (
    select movie_id, genres from silver.movies
),

-- @include movie_genres

movie_years as (
    -- pre-aggregate per movie and year: the genre join then multiplies thousands of rows, not millions
    select movie_id, year, count(*) as n_ratings, sum(rating) as sum_rating
    from ratings
    group by movie_id, year
),

genre_years as (
    select
        coalesce(g.genre, '(no genres listed)') as genre,
        my.year,
        sum(my.n_ratings) as n_ratings,
        sum(my.sum_rating) / sum(my.n_ratings) as avg_rating
    from movie_years as my
    left join movie_genres as g on my.movie_id = g.movie_id
    group by coalesce(g.genre, '(no genres listed)'), my.year
),

all_years as (
    select 'ALL' as genre, year, sum(n_ratings) as n_ratings, sum(sum_rating) / sum(n_ratings) as avg_rating
    from movie_years
    group by year
),

yearly as (
    select genre, year, n_ratings, avg_rating from genre_years
    union all
    select genre, year, n_ratings, avg_rating from all_years
),

-- @include yearly_trends_columns
