with buffer as (
    select user_id, movie_id, rating, rated_at, batch_id, ingested_at from bronze.ratings_buffer
),
pruned as (
    -- rows whose bronze batch was removed by retention stay in silver: a full refresh must not lose them
    select s.* from silver.ratings s
    where s.batch_id not in (select distinct batch_id from bronze.ratings_buffer)
),
unioned as (
    select * from buffer
    union all
    select * from pruned
),
final as (
    -- the newest ingestion of a (user, movie, time) key wins; batch_id breaks ties so reruns agree
    select * from unioned
    qualify row_number() over (partition by user_id, movie_id, rated_at order by ingested_at desc, batch_id desc) = 1
)
select * from final
