select movie_id, count(*) as n
from gold.movie_kpis
group by movie_id
having count(*) > 1 or movie_id is null
