select user_id, movie_id, rated_at, count(*) as n
from silver.ratings
group by user_id, movie_id, rated_at
having count(*) > 1
