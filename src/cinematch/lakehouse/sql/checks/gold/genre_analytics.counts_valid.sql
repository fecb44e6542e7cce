select * from gold.genre_analytics
where n_ratings is null or n_ratings < 1 or n_users < 1 or n_movies < 1
   or n_users > n_ratings or n_movies > n_ratings or n_ratings > n_ratings_month
