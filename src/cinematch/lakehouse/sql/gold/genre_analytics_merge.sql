-- gold.genre_analytics, incremental form: the stored counts and sums plus what the new batches add.
--
-- The same columns and definitions as genre_analytics.sql (which a full refresh runs; a test proves both agree).
-- Inputs besides silver: _gold_new (the silver rows of the new batches), _silver_replaced (the older rows they
-- replaced: same user, movie and month, so they change sums, never who or what was rated that month),
-- gold.genre_analytics as built before the batch, and _gold_state, the touched users' rows of
-- gold.user_month_genre_masks with the bits they had before (old_mask) and have now (mask).
-- n_ratings * avg_rating gives back each stored sum exactly (ratings are half steps).
-- $since_month is the first day of the earliest month the new rows fall in.

with

params as (
    select cast($as_of as timestamp) as as_of, cast($since_month as timestamp) as since
),

movies as (
    select movie_id, genres from silver.movies
),

-- @include movie_genres

-- @include genre_masks

changes as (
    select
        movie_id,
        cast(extract(year from rated_at) as integer) as year,
        cast(extract(month from rated_at) as integer) as month,
        1 as n_ratings,
        rating as sum_rating
    from _gold_new
    union all
    select
        movie_id,
        cast(extract(year from rated_at) as integer),
        cast(extract(month from rated_at) as integer),
        -1,
        -rating
    from _silver_replaced
),

movie_month_changes as (
    select movie_id, year, month, sum(n_ratings) as n_ratings, sum(sum_rating) as sum_rating
    from changes
    group by movie_id, year, month
),

rating_delta as (
    select
        coalesce(g.genre, '(no genres listed)') as genre,
        c.year,
        c.month,
        sum(c.n_ratings) as n_ratings,
        sum(c.sum_rating) as sum_rating
    from movie_month_changes as c
    left join movie_genres as g on c.movie_id = g.movie_id
    group by coalesce(g.genre, '(no genres listed)'), c.year, c.month
),

earlier_movie_months as (
    -- the movies each touched month already had: older silver rows from $since on, plus the replaced rows
    select
        r.movie_id,
        cast(extract(year from r.rated_at) as integer) as year,
        cast(extract(month from r.rated_at) as integer) as month
    from silver.ratings as r
    cross join params as p
    where r.rated_at >= p.since and r.batch_id not in (select distinct batch_id from _gold_new)
    union
    select movie_id, cast(extract(year from rated_at) as integer), cast(extract(month from rated_at) as integer)
    from _silver_replaced
),

movie_delta as (
    -- a movie rated in a month for the first time adds one to n_movies of each of its genres
    select coalesce(g.genre, '(no genres listed)') as genre, n.year, n.month, count(*) as n_movies
    from (select distinct movie_id, year, month from movie_month_changes) as n
    left join earlier_movie_months as e on n.movie_id = e.movie_id and n.year = e.year and n.month = e.month
    left join movie_genres as g on n.movie_id = g.movie_id
    where e.movie_id is null
    group by coalesce(g.genre, '(no genres listed)'), n.year, n.month
),

user_delta as (
    -- a genre bit a user's month did not have before adds one to that genre's n_users (old_mask is a subset)
    select b.genre, s.year, s.month, count(*) as n_users
    from _gold_state as s
    inner join genre_bits as b on s.word = b.word and ((s.mask - s.old_mask) & b.bit) <> 0
    group by b.genre, s.year, s.month
),

combined as (
    select
        genre,
        year,
        month,
        sum(n_ratings) as n_ratings,
        sum(sum_rating) as sum_rating,
        sum(n_users) as n_users,
        sum(n_movies) as n_movies
    from (
        select genre, year, month, n_ratings, round(avg_rating * n_ratings * 2) / 2 as sum_rating, n_users, n_movies
        from gold.genre_analytics
        union all
        select genre, year, month, n_ratings, sum_rating, 0, 0 from rating_delta
        union all
        select genre, year, month, 0, 0, 0, n_movies from movie_delta
        union all
        select genre, year, month, 0, 0, n_users, 0 from user_delta
    ) as parts
    group by genre, year, month
    having sum(n_ratings) > 0
),

month_totals as (
    select year, month, sum(n_ratings) as n_ratings_month
    from (
        select distinct year, month, n_ratings_month as n_ratings from gold.genre_analytics
        union all
        select year, month, sum(n_ratings) as n_ratings from movie_month_changes group by year, month
    ) as parts
    group by year, month
),

final as (
    select
        c.genre,
        c.year,
        c.month,
        make_date(c.year, c.month, 1) as month_start,
        c.n_ratings,
        c.n_users,
        c.n_movies,
        c.sum_rating / c.n_ratings as avg_rating,
        t.n_ratings_month,
        cast(c.n_ratings as double) / t.n_ratings_month as share_of_ratings,
        p.as_of
    from combined as c
    inner join month_totals as t on c.year = t.year and c.month = t.month
    cross join params as p
)

select * from final
