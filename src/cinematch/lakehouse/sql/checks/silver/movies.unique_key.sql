select movie_id, count(*) from silver.movies group by movie_id having count(*) > 1
