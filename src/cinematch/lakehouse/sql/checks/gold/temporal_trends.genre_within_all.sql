select g.*
from gold.temporal_trends as g
left join gold.temporal_trends as a on a.year = g.year and a.genre = 'ALL'
where g.genre <> 'ALL' and (a.n_ratings is null or g.n_ratings > a.n_ratings)
