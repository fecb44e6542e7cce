select * from gold.trending_movies
where is_new is null or is_new <> (n_ratings_prev = 0)
   or (is_new and velocity is not null)
   or (not is_new and (velocity is null
       or abs(velocity - cast(n_ratings - n_ratings_prev as double) / n_ratings_prev) > 1e-9))
