select genre, year, month, count(*) as n
from gold.genre_analytics
group by genre, year, month
having count(*) > 1 or genre is null or year is null or month is null
