select s.user_id, s.movie_id, s.rating, s.rated_at
from silver.ratings as s
inner join _new as n on s.user_id = n.user_id and s.movie_id = n.movie_id and s.rated_at = n.rated_at
