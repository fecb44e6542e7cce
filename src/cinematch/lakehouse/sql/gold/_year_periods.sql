-- (shared CTE; needs year_ends(year, last_rated_at): each year's last rating) the period of each year that the
-- year-over-year columns compare: period_days days from 1 January (366 = the whole year, also a leap year's)
measured_periods as (
    select
        year,
        case
            when extract(month from last_rated_at) = 12 and extract(day from last_rated_at) = 31 then 366
            else cast(extract(doy from last_rated_at) as integer)
        end as period_days
    from year_ends
),
