select m.batch_id, m.record_count, coalesce(b.n, 0) as rows_in_buffer
from bronze.ingestion_metadata m
left join (select batch_id, count(*) n from bronze.ratings_buffer group by batch_id) b using (batch_id)
where m.kind = 'ratings' and m.status = 'completed' and m.record_count <> coalesce(b.n, 0)
  and m.batch_id in (select batch_id from bronze.ratings_buffer)
