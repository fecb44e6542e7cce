-- the rows of the batches in _wanted; the newest ingestion of a (user, movie, time) key wins, as in ratings_full.sql
select user_id, movie_id, rating, rated_at, batch_id, ingested_at
from bronze.ratings_buffer
where batch_id in (select batch_id from _wanted)
qualify row_number() over (partition by user_id, movie_id, rated_at order by ingested_at desc, batch_id desc) = 1
