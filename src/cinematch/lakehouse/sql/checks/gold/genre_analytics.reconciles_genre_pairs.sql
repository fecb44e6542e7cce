with
listed as (
    select distinct movie_id, genre
    from (select movie_id, unnest(genres) as genre from silver.movies) as e
    where genre is not null and genre <> ''
),
per_movie as (select movie_id, count(*) as n_genres from listed group by movie_id),
rated as (
    -- counted per movie first: the genre counts then multiply thousands of rows, not every rating
    select movie_id, count(*) as n
    from silver.ratings
    where rated_at <= coalesce((select max(as_of) from gold.genre_analytics), (select max(rated_at) from silver.ratings))
    group by movie_id
),
expected as (
    select coalesce(sum(r.n * coalesce(pm.n_genres, 1)), 0) as n
    from rated as r
    left join per_movie as pm on r.movie_id = pm.movie_id
),
actual as (select coalesce(sum(n_ratings), 0) as n from gold.genre_analytics)
select e.n as expected, a.n as actual from expected as e cross join actual as a where e.n <> a.n
