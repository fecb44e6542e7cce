select user_id, count(*) as n
from gold.user_engagement
group by user_id
having count(*) > 1 or user_id is null
