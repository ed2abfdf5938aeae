SELECT * FROM traces WHERE id = 'tr-'
'1'