select * from gold.trending_movies
where not ((window_days = 7 and "window" = '7d') or (window_days = 30 and "window" = '30d')
           or (window_days = 90 and "window" = '90d'))
   or window_days is null or "window" is null
