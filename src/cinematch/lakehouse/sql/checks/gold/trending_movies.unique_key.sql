select movie_id, window_days, count(*) as n
from gold.trending_movies
group by movie_id, window_days
having count(*) > 1 or movie_id is null or window_days is null
