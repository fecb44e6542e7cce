with expected as (
    select count(*) as n from silver.ratings
    where rated_at <= coalesce((select max(as_of) from gold.movie_kpis), (select max(rated_at) from silver.ratings))
),
actual as (select coalesce(sum(n_ratings), 0) as n from gold.movie_kpis)
select e.n as expected, a.n as actual from expected as e cross join actual as a where e.n <> a.n
