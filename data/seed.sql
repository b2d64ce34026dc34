-- Sample database of Kumo Audio Co., Ltd. (fictional), read by the database_query source.
--
-- The facts agree with data/KNOWLEDGE_BASE.md (products, prices, stores, opening hours, order
-- number format KA-YYYY-NNNNNN, the four order statuses). Stock and orders are a snapshot taken
-- on 2026-04-03. Portable SQL: it runs unchanged on SQLite and PostgreSQL (no dialect types, no
-- semicolons inside string literals, dates as 'YYYY-MM-DD' literals, opening times as 'HH:MM').

CREATE TABLE products (
    code           VARCHAR(10)  PRIMARY KEY,
    name_en        VARCHAR(40)  NOT NULL,
    name_ja        VARCHAR(40)  NOT NULL,
    kind           VARCHAR(60)  NOT NULL,
    price_yen      INTEGER      NOT NULL CHECK (price_yen > 0),
    warranty_years INTEGER      NOT NULL CHECK (warranty_years IN (1, 2))
);

CREATE TABLE stores (
    code            VARCHAR(10)  PRIMARY KEY,
    sort_order      INTEGER      NOT NULL UNIQUE,
    name_en         VARCHAR(40)  NOT NULL,
    name_ja         VARCHAR(40)  NOT NULL,
    phone           VARCHAR(20)  NOT NULL,
    opened_year     INTEGER      NOT NULL,
    closing_note_en VARCHAR(200) NOT NULL,
    closing_note_ja VARCHAR(200) NOT NULL
);

-- One row per weekday (1 = Monday ... 7 = Sunday) and one for public holidays (8).
-- opens / closes are NULL on the store's regular closing day.
CREATE TABLE store_hours (
    store_code VARCHAR(10) NOT NULL REFERENCES stores (code),
    day_index  INTEGER     NOT NULL CHECK (day_index BETWEEN 1 AND 8),
    day_en     VARCHAR(20) NOT NULL,
    day_ja     VARCHAR(10) NOT NULL,
    opens      VARCHAR(5),
    closes     VARCHAR(5),
    PRIMARY KEY (store_code, day_index)
);

CREATE TABLE stock (
    product_code VARCHAR(10) NOT NULL REFERENCES products (code),
    store_code   VARCHAR(10) NOT NULL REFERENCES stores (code),
    quantity     INTEGER     NOT NULL CHECK (quantity >= 0),
    updated_on   DATE        NOT NULL,
    PRIMARY KEY (product_code, store_code)
);

CREATE TABLE orders (
    order_number VARCHAR(14) PRIMARY KEY,
    customer_id  VARCHAR(12) NOT NULL,
    status       VARCHAR(12) NOT NULL CHECK (status IN ('received', 'preparing', 'shipped', 'delivered')),
    ordered_on   DATE        NOT NULL,
    shipped_on   DATE,
    delivered_on DATE,
    shipping_yen INTEGER     NOT NULL CHECK (shipping_yen >= 0),
    total_yen    INTEGER     NOT NULL CHECK (total_yen > 0)
);

CREATE TABLE order_items (
    order_number   VARCHAR(14) NOT NULL REFERENCES orders (order_number),
    line           INTEGER     NOT NULL,
    product_code   VARCHAR(10) NOT NULL REFERENCES products (code),
    quantity       INTEGER     NOT NULL CHECK (quantity > 0),
    unit_price_yen INTEGER     NOT NULL,
    PRIMARY KEY (order_number, line)
);

INSERT INTO products (code, name_en, name_ja, kind, price_yen, warranty_years) VALUES
    ('KA-100', 'Kumo Air', 'クモ エア', 'true wireless earbuds', 12800, 1),
    ('KA-200', 'Kumo Air Pro', 'クモ エア プロ', 'noise-cancelling earbuds', 24800, 2),
    ('KH-150', 'Kumo Lite', 'クモ ライト', 'on-ear wireless headphones', 9800, 1),
    ('KH-300', 'Kumo Halo', 'クモ ハロ', 'noise-cancelling over-ear headphones', 39800, 2),
    ('KS-50', 'Kumo Stone', 'クモ ストーン', 'portable Bluetooth speaker', 8800, 1),
    ('KS-80', 'Kumo Boulder', 'クモ ボルダー', 'large portable speaker', 19800, 1),
    ('KS-200', 'Kumo Dome', 'クモ ドーム', 'home Wi-Fi / Bluetooth speaker', 32800, 2);

INSERT INTO stores (code, sort_order, name_en, name_ja, phone, opened_year, closing_note_en, closing_note_ja) VALUES
    ('shibuya', 1, 'Shibuya', '渋谷店', '03-5400-8831', 2012,
     'There is no regular closing day (closed December 31 and January 1).',
     '定休日はありません（12月31日と1月1日は休業）。'),
    ('umeda', 2, 'Osaka Umeda', '梅田店', '06-6375-8832', 2016,
     'Closed on the third Wednesday of each month (open if it is a public holiday).',
     '定休日は毎月第3水曜日です（祝日の場合は営業）。'),
    ('sapporo', 3, 'Sapporo', '札幌店', '011-206-8833', 2019,
     'Closed every Tuesday (if a Tuesday is a public holiday, open that day and closed the next Wednesday).',
     '定休日は毎週火曜日です（火曜日が祝日の場合は営業し、翌水曜日が休み）。');

INSERT INTO store_hours (store_code, day_index, day_en, day_ja, opens, closes) VALUES
    ('shibuya', 1, 'Monday', '月曜', '11:00', '21:00'),
    ('shibuya', 2, 'Tuesday', '火曜', '11:00', '21:00'),
    ('shibuya', 3, 'Wednesday', '水曜', '11:00', '21:00'),
    ('shibuya', 4, 'Thursday', '木曜', '11:00', '21:00'),
    ('shibuya', 5, 'Friday', '金曜', '11:00', '21:00'),
    ('shibuya', 6, 'Saturday', '土曜', '10:00', '21:00'),
    ('shibuya', 7, 'Sunday', '日曜', '10:00', '21:00'),
    ('shibuya', 8, 'public holidays', '祝日', '10:00', '21:00'),
    ('umeda', 1, 'Monday', '月曜', '10:00', '20:00'),
    ('umeda', 2, 'Tuesday', '火曜', '10:00', '20:00'),
    ('umeda', 3, 'Wednesday', '水曜', '10:00', '20:00'),
    ('umeda', 4, 'Thursday', '木曜', '10:00', '20:00'),
    ('umeda', 5, 'Friday', '金曜', '10:00', '20:00'),
    ('umeda', 6, 'Saturday', '土曜', '10:00', '20:00'),
    ('umeda', 7, 'Sunday', '日曜', '10:00', '19:00'),
    ('umeda', 8, 'public holidays', '祝日', '10:00', '19:00'),
    ('sapporo', 1, 'Monday', '月曜', '11:00', '19:00'),
    ('sapporo', 2, 'Tuesday', '火曜', NULL, NULL),
    ('sapporo', 3, 'Wednesday', '水曜', '11:00', '19:00'),
    ('sapporo', 4, 'Thursday', '木曜', '11:00', '19:00'),
    ('sapporo', 5, 'Friday', '金曜', '11:00', '19:00'),
    ('sapporo', 6, 'Saturday', '土曜', '11:00', '19:00'),
    ('sapporo', 7, 'Sunday', '日曜', '11:00', '19:00'),
    ('sapporo', 8, 'public holidays', '祝日', '11:00', '19:00');

INSERT INTO stock (product_code, store_code, quantity, updated_on) VALUES
    ('KA-100', 'shibuya', 24, '2026-04-03'),
    ('KA-100', 'umeda', 18, '2026-04-03'),
    ('KA-100', 'sapporo', 9, '2026-04-03'),
    ('KA-200', 'shibuya', 12, '2026-04-03'),
    ('KA-200', 'umeda', 0, '2026-04-03'),
    ('KA-200', 'sapporo', 5, '2026-04-03'),
    ('KH-150', 'shibuya', 15, '2026-04-03'),
    ('KH-150', 'umeda', 11, '2026-04-03'),
    ('KH-150', 'sapporo', 6, '2026-04-03'),
    ('KH-300', 'shibuya', 4, '2026-04-03'),
    ('KH-300', 'umeda', 3, '2026-04-03'),
    ('KH-300', 'sapporo', 0, '2026-04-03'),
    ('KS-50', 'shibuya', 20, '2026-04-03'),
    ('KS-50', 'umeda', 14, '2026-04-03'),
    ('KS-50', 'sapporo', 8, '2026-04-03'),
    ('KS-80', 'shibuya', 6, '2026-04-03'),
    ('KS-80', 'umeda', 0, '2026-04-03'),
    ('KS-80', 'sapporo', 2, '2026-04-03'),
    ('KS-200', 'shibuya', 3, '2026-04-03'),
    ('KS-200', 'umeda', 2, '2026-04-03'),
    ('KS-200', 'sapporo', 1, '2026-04-03');

-- Shipping: 660 yen under 5,500 yen (never the case here: every product costs more), free above;
-- Hokkaido, Okinawa and remote islands +550 yen even when shipping is free. No dispatch
-- Dec 29 - Jan 3. Orders paid by 14:00 on business days leave the same day.
INSERT INTO orders (order_number, customer_id, status, ordered_on, shipped_on, delivered_on, shipping_yen, total_yen) VALUES
    ('KA-2025-004711', 'C-100231', 'delivered', '2025-11-20', '2025-11-20', '2025-11-22', 0, 39800),
    ('KA-2025-005026', 'C-100874', 'delivered', '2025-12-15', '2025-12-16', '2025-12-18', 0, 25600),
    ('KA-2025-005310', 'C-101112', 'delivered', '2025-12-28', '2026-01-05', '2026-01-07', 0, 8800),
    ('KA-2026-000018', 'C-100231', 'delivered', '2026-01-12', '2026-01-13', '2026-01-15', 0, 24800),
    ('KA-2026-000052', 'C-101305', 'delivered', '2026-02-09', '2026-02-09', '2026-02-11', 0, 32800),
    ('KA-2026-000087', 'C-101377', 'delivered', '2026-03-02', '2026-03-02', '2026-03-04', 0, 9800),
    ('KA-2026-000101', 'C-101402', 'delivered', '2026-03-16', '2026-03-17', '2026-03-19', 0, 19800),
    ('KA-2026-000108', 'C-101455', 'delivered', '2026-03-23', '2026-03-23', '2026-03-26', 550, 13350),
    ('KA-2026-000112', 'C-100874', 'delivered', '2026-03-27', '2026-03-27', '2026-03-30', 0, 39800),
    ('KA-2026-000115', 'C-101490', 'delivered', '2026-03-30', '2026-03-31', '2026-04-02', 0, 17600),
    ('KA-2026-000119', 'C-101502', 'shipped', '2026-03-31', '2026-04-01', NULL, 0, 24800),
    ('KA-2026-000123', 'C-101518', 'shipped', '2026-04-01', '2026-04-02', NULL, 0, 39800),
    ('KA-2026-000124', 'C-101520', 'shipped', '2026-04-02', '2026-04-02', NULL, 0, 12800),
    ('KA-2026-000126', 'C-101533', 'shipped', '2026-04-02', '2026-04-03', NULL, 550, 20350),
    ('KA-2026-000127', 'C-101540', 'preparing', '2026-04-02', NULL, NULL, 0, 19600),
    ('KA-2026-000128', 'C-100231', 'preparing', '2026-04-03', NULL, NULL, 0, 32800),
    ('KA-2026-000129', 'C-101547', 'preparing', '2026-04-03', NULL, NULL, 0, 37600),
    ('KA-2026-000130', 'C-101551', 'received', '2026-04-03', NULL, NULL, 0, 8800),
    ('KA-2026-000131', 'C-101556', 'received', '2026-04-03', NULL, NULL, 0, 39800),
    ('KA-2026-000132', 'C-101560', 'received', '2026-04-03', NULL, NULL, 550, 13350);

INSERT INTO order_items (order_number, line, product_code, quantity, unit_price_yen) VALUES
    ('KA-2025-004711', 1, 'KH-300', 1, 39800),
    ('KA-2025-005026', 1, 'KA-100', 2, 12800),
    ('KA-2025-005310', 1, 'KS-50', 1, 8800),
    ('KA-2026-000018', 1, 'KA-200', 1, 24800),
    ('KA-2026-000052', 1, 'KS-200', 1, 32800),
    ('KA-2026-000087', 1, 'KH-150', 1, 9800),
    ('KA-2026-000101', 1, 'KS-80', 1, 19800),
    ('KA-2026-000108', 1, 'KA-100', 1, 12800),
    ('KA-2026-000112', 1, 'KH-300', 1, 39800),
    ('KA-2026-000115', 1, 'KS-50', 2, 8800),
    ('KA-2026-000119', 1, 'KA-200', 1, 24800),
    ('KA-2026-000123', 1, 'KH-300', 1, 39800),
    ('KA-2026-000124', 1, 'KA-100', 1, 12800),
    ('KA-2026-000126', 1, 'KS-80', 1, 19800),
    ('KA-2026-000127', 1, 'KH-150', 2, 9800),
    ('KA-2026-000128', 1, 'KS-200', 1, 32800),
    ('KA-2026-000129', 1, 'KA-200', 1, 24800),
    ('KA-2026-000129', 2, 'KA-100', 1, 12800),
    ('KA-2026-000130', 1, 'KS-50', 1, 8800),
    ('KA-2026-000131', 1, 'KH-300', 1, 39800),
    ('KA-2026-000132', 1, 'KA-100', 1, 12800);
