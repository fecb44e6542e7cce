with expected as (
    select count(*) as n from silver.ratings
    where rated_at <= coalesce((select max(as_of) from gold.user_engagement), (select max(rated_at) from silver.ratings))
),
actual as (select coalesce(sum(n_ratings), 0) as n from gold.user_engagement)
select e.n as expected, a.n as actual from expected as e cross join actual as a where e.n <> a.n
