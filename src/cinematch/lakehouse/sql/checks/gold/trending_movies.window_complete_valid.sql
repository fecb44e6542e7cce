with first_rating as (select min(rated_at) as data_start from silver.ratings)
select t.movie_id, t.window_days, t.window_start, t.window_complete, f.data_start
from gold.trending_movies as t
cross join first_rating as f
where t.window_complete is null
   or t.window_complete <> coalesce(f.data_start <= t.window_start - (t.window_end - t.window_start), false)
