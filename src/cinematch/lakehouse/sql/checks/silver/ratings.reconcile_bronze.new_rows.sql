select user_id, movie_id, rated_at from bronze.ratings_buffer
where batch_id in (select batch_id from _check_batches)
except
select user_id, movie_id, rated_at from silver.ratings
where batch_id in (select batch_id from _check_batches)
