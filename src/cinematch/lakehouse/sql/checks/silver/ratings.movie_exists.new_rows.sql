select r.* from silver.ratings r anti join silver.movies m using (movie_id)
where r.batch_id in (select batch_id from _check_batches)
