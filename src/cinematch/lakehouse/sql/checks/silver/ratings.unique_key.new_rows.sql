select user_id, movie_id, rated_at, count(*) as n
from silver.ratings
where (user_id, movie_id, rated_at) in (
    select user_id, movie_id, rated_at from silver.ratings where batch_id in (select batch_id from _check_batches)
)
group by user_id, movie_id, rated_at
having count(*) > 1
