-- (shared CTE and the closing select; needs params(as_of), yearly(genre, year, n_ratings, avg_rating),
-- prev_periods(genre, year, n_ratings, sum_rating): the year before's ratings inside the period of `year`, and
-- year_periods(year, period_days))
-- gold.temporal_trends's columns, with the change against the same period of the calendar year before
final as (
    select
        cur.year,
        cur.genre,
        cur.n_ratings,
        cur.avg_rating,
        cast(cur.n_ratings - prev.n_ratings as double) / nullif(prev.n_ratings, 0) as yoy_volume_change,
        cur.avg_rating - prev.sum_rating / nullif(prev.n_ratings, 0) as yoy_avg_rating_change,
        -- the period's last day in the year before: day period_days, at most that year's 31 December
        least(make_date(cur.year - 1, 1, 1) + cast(yp.period_days - 1 as integer), make_date(cur.year - 1, 12, 31))
            as prev_period_end,
        prev.n_ratings as n_ratings_prev_period,
        prev.sum_rating / nullif(prev.n_ratings, 0) as avg_rating_prev_period,
        p.as_of
    from yearly as cur
    left join prev_periods as prev on cur.genre = prev.genre and cur.year = prev.year
    left join year_periods as yp on cur.year = yp.year
    cross join params as p
)

select * from final
