select * from gold.genre_analytics
where share_of_ratings is null or share_of_ratings < 0 or share_of_ratings > 1
