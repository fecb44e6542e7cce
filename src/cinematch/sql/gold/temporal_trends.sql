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

exploded_genres as (
    select movie_id, unnest(genres) as genre from movies
),

listed_genres as (
    select distinct movie_id, genre
    from exploded_genres
    where genre is not null and genre <> ''
),

movie_genres as (
    select movie_id, genre from listed_genres
    union all
    select m.movie_id, '(no genres listed)' as genre
    from movies as m
    left join (select distinct movie_id from listed_genres) as l on m.movie_id = l.movie_id
    where l.movie_id is null
),

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

final as (
    select
        cur.year,
        cur.genre,
        cur.n_ratings,
        cur.avg_rating,
        cast(cur.n_ratings - prev.n_ratings as double) / prev.n_ratings as yoy_volume_change,
        cur.avg_rating - prev.avg_rating as yoy_avg_rating_change,
        p.as_of
    from yearly as cur
    left join yearly as prev on cur.genre = prev.genre and prev.year = cur.year - 1
    cross join params as p
)

select * from final
