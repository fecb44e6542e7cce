-- (shared CTE and the closing select; needs params(as_of) and yearly(genre, year, n_ratings, avg_rating))
-- gold.temporal_trends's columns, with the change against the calendar year before
final as (
    select
        cur.year,
        cur.genre,
        cur.n_ratings,
        cur.avg_rating,
        cast(cur.n_ratings - prev.n_ratings as double) / prev.n_ratings as yoy_volume_change,
        cur.avg_rating - prev.avg_rating as yoy_avg_rating_change,
        p.as_of
    from yearly as cur
    left join yearly as prev on cur.genre = prev.genre and prev.year = cur.year - 1
    cross join params as p
)

select * from final
