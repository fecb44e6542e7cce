with
expected as (
    select count(*) as n from silver.ratings
    where rated_at <= coalesce((select max(as_of) from gold.genre_analytics), (select max(rated_at) from silver.ratings))
),
actual as (
    select coalesce(sum(n_ratings_month), 0) as n
    from (select distinct year, month, n_ratings_month from gold.genre_analytics) as m
)
select e.n as expected, a.n as actual from expected as e cross join actual as a where e.n <> a.n
