select * from silver.ratings where not (rating between 0.5 and 5.0) or rating * 2 <> round(rating * 2)
