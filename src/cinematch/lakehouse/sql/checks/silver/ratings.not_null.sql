select * from silver.ratings
where user_id is null or movie_id is null or rating is null or rated_at is null or batch_id is null
