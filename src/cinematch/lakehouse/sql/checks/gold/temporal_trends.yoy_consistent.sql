with expected as (
    select
        cur.year,
        cur.genre,
        cur.yoy_volume_change,
        cur.yoy_avg_rating_change,
        cur.prev_period_end,
        cur.n_ratings_prev_period,
        cur.avg_rating_prev_period,
        prev.n_ratings as prev_year_n,
        prev.avg_rating as prev_year_avg,
        cast(cur.n_ratings - cur.n_ratings_prev_period as double) / nullif(cur.n_ratings_prev_period, 0) as exp_volume,
        cur.avg_rating - cur.avg_rating_prev_period as exp_avg
    from gold.temporal_trends as cur
    left join gold.temporal_trends as prev on cur.genre = prev.genre and prev.year = cur.year - 1
)
select * from expected
where (exp_volume is null) <> (yoy_volume_change is null)
   or (exp_avg is null) <> (yoy_avg_rating_change is null)
   or abs(exp_volume - yoy_volume_change) > 1e-9
   or abs(exp_avg - yoy_avg_rating_change) > 1e-9
   or (prev_year_n is null) <> (n_ratings_prev_period is null)
   or n_ratings_prev_period < 0
   or n_ratings_prev_period > prev_year_n
   or (n_ratings_prev_period = 0) <> (avg_rating_prev_period is null)
   or prev_period_end is null
   or extract(year from prev_period_end) <> year - 1
   or (prev_period_end = make_date(year - 1, 12, 31)
       and (n_ratings_prev_period <> prev_year_n or abs(avg_rating_prev_period - prev_year_avg) > 1e-9))
