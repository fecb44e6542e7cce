select * from gold.user_engagement
where n_ratings is null or n_ratings < 1 or active_days < 1 or active_days > n_ratings
   or first_rated_at > last_rated_at
   or genre_diversity is null or genre_diversity < 0
   or high_rating_share is null or high_rating_share < 0 or high_rating_share > 1
   or avg_rating is null or avg_rating < 0.5 or avg_rating > 5.0
