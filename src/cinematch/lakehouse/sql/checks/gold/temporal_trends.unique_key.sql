select year, genre, count(*) as n
from gold.temporal_trends
group by year, genre
having count(*) > 1 or year is null or genre is null
