-- gold.genre_analytics: one row per (genre, year, month) of rated_at.
--
-- Only ratings with rated_at <= $as_of count (point-in-time: a backfill for an old logical date reproduces
-- what gold looked like then). $as_of defaults to the newest silver rated_at when null.
-- A rating of a movie with k genres counts once for each of its k genres; movies with an empty or null genre
-- list (placeholders) and ratings of movies missing from silver.movies count as '(no genres listed)'.
-- share_of_ratings = n_ratings (ratings carrying the genre that month) / n_ratings_month (all ratings that
-- month), so it lies in [0, 1]; the shares of one month sum to >= 1 because multi-genre ratings count twice.

with

params as (
    select coalesce(cast($as_of as timestamp), (select max(rated_at) from silver.ratings)) as as_of
),

ratings as (
    select
        r.user_id,
        r.movie_id,
        r.rating,
        cast(extract(year from r.rated_at) as integer) as year,
        cast(extract(month from r.rated_at) as integer) as month,
        cast(date_trunc('month', r.rated_at) as date) as month_start
    from silver.ratings as r
    cross join params as p
    where r.rated_at <= p.as_of
),

movies as (
    select movie_id, genres from silver.movies
),

-- @include movie_genres

movie_months as (
    -- pre-aggregate per movie and month: the genre join then multiplies thousands of rows, not millions
    select movie_id, year, month, month_start, count(*) as n_ratings, sum(rating) as sum_rating
    from ratings
    group by movie_id, year, month, month_start
),

genre_months_movies as (
    select
        coalesce(g.genre, '(no genres listed)') as genre,
        mm.year,
        mm.month,
        mm.month_start,
        sum(mm.n_ratings) as n_ratings,
        count(*) as n_movies,
        sum(mm.sum_rating) / sum(mm.n_ratings) as avg_rating
    from movie_months as mm
    left join movie_genres as g on mm.movie_id = g.movie_id
    group by coalesce(g.genre, '(no genres listed)'), mm.year, mm.month, mm.month_start
),

-- @include genre_masks

-- @include user_month_masks

user_genre_months as (
    select b.genre, u.year, u.month, u.user_id
    from user_month_masks as u
    inner join genre_bits as b on u.word = b.word and (u.mask & b.bit) <> 0
),

genre_month_users as (
    select genre, year, month, count(*) as n_users
    from user_genre_months
    group by genre, year, month
),

genre_months as (
    select
        m.genre,
        m.year,
        m.month,
        m.month_start,
        m.n_ratings,
        u.n_users,
        m.n_movies,
        m.avg_rating
    from genre_months_movies as m
    inner join genre_month_users as u on m.genre = u.genre and m.year = u.year and m.month = u.month
),

month_totals as (
    select year, month, count(*) as n_ratings_month
    from ratings
    group by year, month
),

final as (
    select
        g.genre,
        g.year,
        g.month,
        g.month_start,
        g.n_ratings,
        g.n_users,
        g.n_movies,
        g.avg_rating,
        t.n_ratings_month,
        cast(g.n_ratings as double) / t.n_ratings_month as share_of_ratings,
        p.as_of
    from genre_months as g
    inner join month_totals as t on g.year = t.year and g.month = t.month
    cross join params as p
)

select * from final
