select * from silver.ratings
where batch_id in (select batch_id from _check_batches)
  and (not (rating between 0.5 and 5.0) or rating * 2 <> round(rating * 2))
