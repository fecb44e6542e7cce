select * from silver.ratings
where batch_id in (select batch_id from _check_batches)
  and (user_id is null or movie_id is null or rating is null or rated_at is null)
