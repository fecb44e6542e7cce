with
a as (
    select coalesce((select max(as_of) from gold.temporal_trends), (select max(rated_at) from silver.ratings)) as as_of
),
rated as (
    select cast(extract(year from r.rated_at) as integer) as year, cast(r.rated_at as date) as rated_day
    from silver.ratings as r
    cross join a
    where r.rated_at <= a.as_of
),
final_days as (
    select year, max(rated_day) as final_day from rated group by year
),
expected_ends as (
    select
        year,
        case
            when final_day = make_date(year, 12, 31) then make_date(year - 1, 12, 31)
            else least(make_date(year - 1, 1, 1) + cast(final_day - make_date(year, 1, 1) as integer),
                       make_date(year - 1, 12, 31))
        end as prev_period_end
    from final_days
),
expected as (
    select
        e.year,
        e.prev_period_end,
        count(r.rated_day) as n_prev_year,
        count(case when r.rated_day <= e.prev_period_end then 1 end) as n_prev_period
    from expected_ends as e
    left join rated as r on r.year = e.year - 1
    group by e.year, e.prev_period_end
)
select t.year, t.prev_period_end, t.n_ratings_prev_period, e.prev_period_end as expected_end, e.n_prev_period
from gold.temporal_trends as t
inner join expected as e on t.year = e.year
where t.genre = 'ALL' and (
    t.prev_period_end is null
    or t.prev_period_end <> e.prev_period_end
    or (e.n_prev_year = 0 and t.n_ratings_prev_period is not null)
    or (e.n_prev_year > 0 and (t.n_ratings_prev_period is null or t.n_ratings_prev_period <> e.n_prev_period))
)
