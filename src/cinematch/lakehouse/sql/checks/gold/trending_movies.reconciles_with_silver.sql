with
a as (
    select coalesce((select max(as_of) from gold.trending_movies), (select max(rated_at) from silver.ratings)) as as_of
),
counted as (
    -- one pass over the last 90 days, each rating counted in every window that holds it
    select
        sum(case when r.rated_at > a.as_of - interval '7' day then 1 else 0 end) as n_7,
        sum(case when r.rated_at > a.as_of - interval '30' day then 1 else 0 end) as n_30,
        count(*) as n_90
    from silver.ratings as r
    cross join a
    where r.rated_at > a.as_of - interval '90' day and r.rated_at <= a.as_of
),
expected as (
    select 7 as window_days, coalesce(n_7, 0) as n from counted
    union all select 30, coalesce(n_30, 0) from counted
    union all select 90, n_90 from counted
),
actual as (
    select window_days, sum(n_ratings) as n from gold.trending_movies group by window_days
)
select e.window_days, e.n as expected, coalesce(t.n, 0) as actual
from expected as e
left join actual as t on e.window_days = t.window_days
where e.n <> coalesce(t.n, 0)
