-- gold.temporal_trends: one row per (year, genre) of rated_at, plus genre 'ALL' per year (every rating once).
--
-- Only ratings with rated_at <= $as_of count; $as_of defaults to the newest silver rated_at when null.
-- Genres as in genre_analytics (multi-genre ratings count for each genre; empty lists -> '(no genres listed)').
--
-- Year over year compares like with like: each year with the SAME PERIOD of the year before. A year's period
-- runs from 1 January to the day of year of its last rating (of any genre), so the year in progress, known up to
-- 20 March 2024 (day 80), is compared with days 1..80 of 2023, not with all of it (a steady one rating a
-- day then gives 0, where a whole previous year gave -0.78). Equal day numbers give equal day counts across a
-- 29 February. A year whose last rating falls on 31 December is complete and is compared with the whole year
-- before.
--   prev_period_end        = the last day of the year before that the comparison counts
--   n_ratings_prev_period  = the genre's ratings in the year before up to prev_period_end
--   avg_rating_prev_period = their mean
--   yoy_volume_change      = (n_ratings - n_ratings_prev_period) / n_ratings_prev_period   (relative change)
--   yoy_avg_rating_change  = avg_rating - avg_rating_prev_period                          (difference)
-- They compare with the calendar year before (not merely the previous row): the previous-period columns are null
-- for the genre's first year and for a year whose previous year had no ratings of that genre, and the yoy
-- columns also when none of them fell in the period.

with

params as (
    select coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of
),

ratings as (
    select
        r.movie_id,
        r.rating,
        r.rated_at,
        cast(extract(year from r.rated_at) as integer) as year,
        cast(extract(doy from r.rated_at) as integer) as day_of_year
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

movies as (
    select movie_id, genres from silver.movies
),

-- @include movie_genres

year_ends as (
    select year, max(rated_at) as last_rated_at from ratings group by year
),

-- @include year_periods

year_periods as (
    select year, period_days from measured_periods
),

movie_years as (
    -- pre-aggregate per movie and year: the genre join then multiplies thousands of rows, not millions. The
    -- *_next_period sums count the ratings inside the period the following year compares with.
    select
        r.movie_id,
        r.year,
        count(*) as n_ratings,
        sum(r.rating) as sum_rating,
        count(case when r.day_of_year <= nxt.period_days then 1 end) as n_next_period,
        sum(case when r.day_of_year <= nxt.period_days then r.rating else 0 end) as sum_next_period
    from ratings as r
    left join year_periods as nxt on nxt.year = r.year + 1
    group by r.movie_id, r.year
),

genre_years as (
    select
        coalesce(g.genre, '(no genres listed)') as genre,
        my.year,
        sum(my.n_ratings) as n_ratings,
        sum(my.sum_rating) / sum(my.n_ratings) as avg_rating,
        sum(my.n_next_period) as n_next_period,
        sum(my.sum_next_period) as sum_next_period
    from movie_years as my
    left join movie_genres as g on my.movie_id = g.movie_id
    group by coalesce(g.genre, '(no genres listed)'), my.year
),

all_years as (
    select
        'ALL' as genre,
        year,
        sum(n_ratings) as n_ratings,
        sum(sum_rating) / sum(n_ratings) as avg_rating,
        sum(n_next_period) as n_next_period,
        sum(sum_next_period) as sum_next_period
    from movie_years
    group by year
),

yearly as (
    select genre, year, n_ratings, avg_rating from genre_years
    union all
    select genre, year, n_ratings, avg_rating from all_years
),

prev_periods as (
    -- keyed by the year that compares: the year before's ratings inside that year's period
    select genre, year + 1 as year, n_next_period as n_ratings, sum_next_period as sum_rating from genre_years
    union all
    select genre, year + 1 as year, n_next_period as n_ratings, sum_next_period as sum_rating from all_years
),

-- @include yearly_trends_columns
