select batch_id, reason, row_number from bronze.quarantine
