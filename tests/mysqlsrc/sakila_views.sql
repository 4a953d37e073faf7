-- MySQL's Sakila sample (sakila-schema.sql), trimmed to the tables its actor_info,
-- film_list and nicer_but_slower_film_list views read, with a few rows. The views' text is
-- the sample's own, less its `sakila.` qualifiers (the test database has another name).
CREATE TABLE actor (
  actor_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT, first_name VARCHAR(45) NOT NULL,
  last_name VARCHAR(45) NOT NULL, PRIMARY KEY (actor_id));
CREATE TABLE category (
  category_id TINYINT UNSIGNED NOT NULL AUTO_INCREMENT, name VARCHAR(25) NOT NULL,
  PRIMARY KEY (category_id));
CREATE TABLE film (
  film_id SMALLINT UNSIGNED NOT NULL AUTO_INCREMENT, title VARCHAR(128) NOT NULL,
  description TEXT DEFAULT NULL, rental_rate DECIMAL(4,2) NOT NULL DEFAULT 4.99,
  length SMALLINT UNSIGNED DEFAULT NULL,
  rating ENUM('G','PG','PG-13','R','NC-17') DEFAULT 'G', PRIMARY KEY (film_id));
CREATE TABLE film_actor (
  actor_id SMALLINT UNSIGNED NOT NULL, film_id SMALLINT UNSIGNED NOT NULL,
  PRIMARY KEY (actor_id, film_id));
CREATE TABLE film_category (
  film_id SMALLINT UNSIGNED NOT NULL, category_id TINYINT UNSIGNED NOT NULL,
  PRIMARY KEY (film_id, category_id));
INSERT INTO actor VALUES (1, 'PENELOPE', 'GUINESS'), (2, 'NICK', 'WAHLBERG'),
  (3, 'ED', 'CHASE'), (4, 'JENNIFER', 'DAVIS'), (5, 'JOHNNY', 'LOLLOBRIGIDA');
INSERT INTO category VALUES (1, 'Action'), (2, 'Animation'), (3, 'Children'), (4, 'Drama');
INSERT INTO film VALUES
  (1, 'ACADEMY DINOSAUR', 'A Epic Drama', 0.99, 86, 'PG'),
  (2, 'ACE GOLDFINGER', 'A Astounding Epistle', 4.99, 48, 'G'),
  (3, 'ADAPTATION HOLES', NULL, 2.99, 50, 'NC-17'),
  (4, 'AFFAIR PREJUDICE', 'A Fanciful Documentary', 2.99, 117, 'G'),
  (5, 'ZORRO ARK', 'A Intrepid Panorama', 4.99, NULL, 'NC-17');
INSERT INTO film_actor VALUES (1, 1), (1, 4), (1, 5), (2, 2), (2, 3), (3, 4), (3, 1),
  (4, 5), (4, 2), (4, 1), (1, 2);
INSERT INTO film_category VALUES (1, 4), (2, 1), (3, 3), (4, 1), (5, 4);
CREATE VIEW actor_info
AS
SELECT
a.actor_id,
a.first_name,
a.last_name,
GROUP_CONCAT(DISTINCT CONCAT(c.name, ': ',
        (SELECT GROUP_CONCAT(f.title ORDER BY f.title SEPARATOR ', ')
                    FROM film f
                    INNER JOIN film_category fc
                      ON f.film_id = fc.film_id
                    INNER JOIN film_actor fa
                      ON f.film_id = fa.film_id
                    WHERE fc.category_id = c.category_id
                    AND fa.actor_id = a.actor_id
                 )
             )
             ORDER BY c.name SEPARATOR '; ')
AS film_info
FROM actor a
LEFT JOIN film_actor fa
  ON a.actor_id = fa.actor_id
LEFT JOIN film_category fc
  ON fa.film_id = fc.film_id
LEFT JOIN category c
  ON fc.category_id = c.category_id
GROUP BY a.actor_id, a.first_name, a.last_name;
CREATE VIEW film_list
AS
SELECT film.film_id AS FID, film.title AS title, film.description AS description, category.name AS category, film.rental_rate AS price,
	film.length AS length, film.rating AS rating, GROUP_CONCAT(CONCAT(actor.first_name, _utf8mb4' ', actor.last_name) SEPARATOR ', ') AS actors
FROM category LEFT JOIN film_category ON category.category_id = film_category.category_id LEFT JOIN film ON film_category.film_id = film.film_id
        JOIN film_actor ON film.film_id = film_actor.film_id
	JOIN actor ON film_actor.actor_id = actor.actor_id
GROUP BY film.film_id, category.name;
CREATE VIEW nicer_but_slower_film_list
AS
SELECT film.film_id AS FID, film.title AS title, film.description AS description, category.name AS category, film.rental_rate AS price,
	film.length AS length, film.rating AS rating, GROUP_CONCAT(CONCAT(CONCAT(UCASE(SUBSTR(actor.first_name,1,1)),
	LCASE(SUBSTR(actor.first_name,2,LENGTH(actor.first_name))),_utf8mb4' ',CONCAT(UCASE(SUBSTR(actor.last_name,1,1)),
	LCASE(SUBSTR(actor.last_name,2,LENGTH(actor.last_name)))))) SEPARATOR ', ') AS actors
FROM category LEFT JOIN film_category ON category.category_id = film_category.category_id LEFT JOIN film ON film_category.film_id = film.film_id
        JOIN film_actor ON film.film_id = film_actor.film_id
	JOIN actor ON film_actor.actor_id = actor.actor_id
GROUP BY film.film_id, category.name
