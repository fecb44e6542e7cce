-- gold.temporal_trends, incremental form: the stored yearly sums per genre plus the new batches' ratings.
--
-- The same columns and definitions as temporal_trends.sql (which a full refresh runs; a test proves both
-- agree). Inputs besides silver.movies: _gold_new (the silver rows of the new batches), _silver_replaced (the
-- older rows they replaced, with the same rated_at), gold.temporal_trends as built before the batch and, for the
-- same-period comparison, silver.ratings of the years it changes. Ratings are half steps, so n * avg gives back
-- each stored sum exactly. $since is the first day the new rows fall on.
--
-- Which years are recomputed from silver: those with new ratings (their last rating, and so their period, may
-- have moved) and the years after them (their year before changed). Every other year keeps its stored
-- previous-period columns: nothing they are made of changed.

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

recomputed_years as (
    select distinct year from changed_movie_years
    union
    select distinct year + 1 as year from changed_movie_years
),

silver_years as (
    -- silver's ratings of the recomputed years and the years before them. The replaced rows share rated_at with
    -- new ones, so no year before $since's changed: the constant lower bound lets the scan skip older row groups.
    select
        r.movie_id,
        r.rating,
        r.rated_at,
        cast(extract(year from r.rated_at) as integer) as year,
        cast(extract(doy from r.rated_at) as integer) as day_of_year
    from silver.ratings as r
    cross join params as p
    where r.rated_at >= cast(make_date(cast(extract(year from cast($since as timestamp)) as integer) - 1, 1, 1)
                             as timestamp)
        and r.rated_at <= p.as_of
        and cast(extract(year from r.rated_at) as integer) in (
            select year from recomputed_years
            union
            select year - 1 as year from recomputed_years
        )
),

year_ends as (
    select year, max(rated_at) as last_rated_at
    from silver_years
    where year in (select year from recomputed_years)
    group by year
),

-- @include year_periods

stored_years as (
    select year, max(prev_period_end) as prev_period_end
    from gold.temporal_trends
    where year not in (select year from recomputed_years)
    group by year
),

year_periods as (
    select year, period_days from measured_periods
    union all
    -- the stored period, given back by its last day (a capped 31 December gives back the same day)
    select year, cast(extract(doy from prev_period_end) as integer) as period_days from stored_years
),

movie_prev_periods as (
    -- per movie and recomputed year: the year before's ratings inside the recomputed year's period
    select
        r.movie_id,
        ry.year,
        count(case when r.day_of_year <= mp.period_days then 1 end) as n_ratings,
        sum(case when r.day_of_year <= mp.period_days then r.rating else 0 end) as sum_rating
    from silver_years as r
    inner join recomputed_years as ry on r.year + 1 = ry.year
    left join measured_periods as mp on mp.year = ry.year
    group by r.movie_id, ry.year
),

prev_periods as (
    select coalesce(g.genre, '(no genres listed)') as genre, m.year, sum(m.n_ratings) as n_ratings,
           sum(m.sum_rating) as sum_rating
    from movie_prev_periods as m
    left join movie_genres as g on m.movie_id = g.movie_id
    group by coalesce(g.genre, '(no genres listed)'), m.year
    union all
    select 'ALL' as genre, year, sum(n_ratings) as n_ratings, sum(sum_rating) as sum_rating
    from movie_prev_periods
    group by year
    union all
    select genre, year, n_ratings_prev_period as n_ratings,
           round(coalesce(avg_rating_prev_period, 0) * n_ratings_prev_period * 2) / 2 as sum_rating
    from gold.temporal_trends
    where year not in (select year from recomputed_years) and n_ratings_prev_period is not null
),

-- @include yearly_trends_columns
