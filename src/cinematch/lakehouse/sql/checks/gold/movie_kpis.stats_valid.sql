select * from gold.movie_kpis
where n_ratings is null or n_ratings < 0
   or (n_ratings = 0 and avg_rating is not null)
   or (n_ratings > 0 and (avg_rating is null or avg_rating < 0.5 or avg_rating > 5.0))
   or (n_ratings < 2 and stddev_rating is not null)
   or (n_ratings >= 2 and (stddev_rating is null or stddev_rating < 0))
   or (n_ratings > 0 and bayesian_rating is null)
   or bayesian_rating < 0.5 or bayesian_rating > 5.0
