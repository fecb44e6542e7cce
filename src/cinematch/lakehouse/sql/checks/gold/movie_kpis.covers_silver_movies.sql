select coalesce(s.movie_id, k.movie_id) as movie_id, s.movie_id is null as extra_in_gold
from silver.movies as s
full outer join gold.movie_kpis as k on s.movie_id = k.movie_id
where s.movie_id is null or k.movie_id is null
