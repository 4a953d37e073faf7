# A small ActiveRecord app run against one database: `ruby scenario.rb URL setup|observe`.
#
# setup: build the schema with ActiveRecord::Schema (what `rails db:schema:load` runs), then
# fill every common column type with edge values. observe: print, as JSON, every row as
# ActiveRecord reads it, the results of the app's usual queries, and of its usual writes
# (inside a transaction rolled back at the end). URL: postgresql://, mysql:// or
# sqlite:///path. tests/clients/test_rails_client.py compares what the three say.
require "active_record"
require "bigdecimal"
require "ipaddr"
require "json"
require "uri"

def connect(url)
  uri = URI.parse(url)
  config =
    case uri.scheme
    when "sqlite" then { adapter: "sqlite3", database: uri.path }
    when /\Apostgres/ then { adapter: "postgresql", host: uri.host, port: uri.port,
                             username: uri.user, database: uri.path[1..] }
    else { adapter: "mysql2", host: uri.host, port: uri.port, username: uri.user,
           database: uri.path[1..], encoding: "utf8mb4" }
    end
  ActiveRecord::Base.default_timezone = :utc
  ActiveRecord::Base.establish_connection(config)
end

def postgres?
  ActiveRecord::Base.connection.adapter_name =~ /postg/i
end

class Tag < ActiveRecord::Base
  has_and_belongs_to_many :items
end

class Item < ActiveRecord::Base
  has_and_belongs_to_many :tags
  has_many :notes, dependent: :destroy
  enum status: { draft: 0, published: 1, archived: 2 }
end

class Note < ActiveRecord::Base
  belongs_to :item
end

class ItemTag < ActiveRecord::Base
  self.table_name = "items_tags"
end

UIDS = ["12345678-1234-5678-9abc-def012345678", "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"].freeze
CREATED = Time.utc(2024, 5, 6, 7, 8, 9, 123456)
# Keys in jsonb's order (shorter first, then by bytes): jsonb keeps no other, and
# where(doc: h) on SQLite compares text (README: Profiles)
DOC = { "a" => 1, "n" => [1.5, nil], "é" => "ü <b> & c" }.freeze

def mysql?
  ActiveRecord::Base.connection.adapter_name =~ /mysql/i
end

# MariaDB's json is longtext, a String attribute to ActiveRecord: the app writes JSON text
def doc
  %i[json jsonb].include?(Item.type_for_attribute(:doc).type) ? DOC : DOC.to_json
end

def schema
  pg = postgres?
  ActiveRecord::Schema.define do
    create_table :tags do |t|
      t.string :name, null: false, limit: 50
      t.index :name, unique: true
    end
    create_table :items do |t|
      t.column :uid, pg ? :uuid : :string, null: false
      t.integer :small, limit: 2
      t.integer :num
      t.bigint :big
      t.decimal :price, precision: 12, scale: 2
      t.decimal :precise, precision: 30, scale: 10
      t.float :ratio, limit: 53
      t.boolean :active, null: false, default: false
      t.boolean :maybe
      t.date :day
      t.datetime :at, precision: 6
      t.time :clock, precision: 6
      t.json :data
      t.column :doc, pg ? :jsonb : :json
      t.column :ip, pg ? :inet : :string
      t.string :title, null: false
      t.text :body
      t.binary :blob
      t.integer :status, null: false, default: 0
      t.string :slug, null: false
      t.timestamps precision: 6
      t.index :uid, unique: true
      t.index :slug, unique: true
      t.check_constraint "small >= -1000", name: "small_floor"
    end
    create_join_table :items, :tags
    create_table :notes do |t|
      t.references :item, null: false, foreign_key: true
      t.string :text
    end
  end
end

def items
  [
    { small: -1000, num: -2147483648, big: -9223372036854775808, price: BigDecimal("-9999999999.99"),
      precise: BigDecimal("12345678901234567890.123456789"), ratio: 1e308, active: true,
      maybe: nil, day: Date.new(1, 1, 1), at: Time.utc(1, 1, 1), clock: Time.utc(2000, 1, 1, 0, 0, 0),
      data: { "a" => [1, 2.5, { "b" => nil }], "é" => "ü" }, ip: "10.0.0.1",
      title: "héllo 'q' \"d\"", body: "", blob: "\x00\xFF\x00".b, status: :draft, slug: "one" },
    { small: 32767, num: 2147483647, big: 9223372036854775807, price: BigDecimal("0.01"),
      precise: BigDecimal("0.0000000001"), ratio: -0.0, active: false, maybe: true,
      day: Date.new(9999, 12, 31), at: Time.utc(9999, 12, 31, 23, 59, 59, 999999),
      clock: Time.utc(2000, 1, 1, 23, 59, 59, 999999), data: "just a string",
      ip: "2001:db8::1", title: "𝄞 emoji 😀", body: "line1\nline2\ttab", blob: "".b,
      status: :published, slug: "two" },
    { small: 0, num: 0, big: 0, price: BigDecimal("1234567890.12"), precise: nil, ratio: 0.1,
      active: true, maybe: false, day: Date.new(2024, 2, 29),
      at: Time.utc(2024, 2, 29, 12, 0, 0, 500000), clock: Time.utc(2000, 1, 1, 12, 34, 56),
      data: [], ip: "::ffff:10.0.0.1", title: "plain", body: "x" * 5000, blob: nil,
      status: :archived, slug: "three" },
    { small: 7, num: 7, big: 7, price: BigDecimal("7.00"),
      precise: BigDecimal("1234567890.123456"), ratio: 1.5e-300, active: false, maybe: nil,
      day: Date.new(2000, 1, 1), at: Time.utc(2000, 1, 1, 0, 0, 0, 1),
      clock: Time.utc(2000, 1, 1, 0, 0, 0, 1), data: nil, ip: "192.168.1.0/24",
      title: "plain", body: "other", blob: "\x01".b * 64, status: :draft, slug: "four" },
  ]
end

def setup
  schema
  tags = %w[red Blue grün].map { |name| Tag.create!(name: name) }
  UIDS.zip(items).each_with_index do |(uid, values), n|
    values[:data] = values[:data].to_json if mysql? && !values[:data].nil?
    item = Item.create!(values.merge(uid: uid, created_at: CREATED, updated_at: CREATED,
                                     doc: n.even? ? doc : nil))
    item.tags = tags.first(n % 4)
  end
  first, second = Item.order(:id).first(2)
  Note.create!(item: first, text: "n1")
  Note.create!(item: second, text: "n2")
end

def canon(value)
  case value
  when nil, true, false, Integer then value
  when String
    value.encoding == Encoding::BINARY ? "bytes:#{value.unpack1('H*')}" : value
  when Float then "Float:#{value.inspect}"
  when BigDecimal then "BigDecimal:#{value.to_s('F')}"
  when ActiveSupport::TimeWithZone, Time, DateTime
    "Time:#{value.utc.strftime('%Y-%m-%d %H:%M:%S.%6N')}"
  when Date then "Date:#{value.iso8601}"
  when IPAddr
    full = value.ipv4? ? 32 : 128
    value.prefix == full ? value.to_s : "#{value}/#{value.prefix}"
  when Array then value.map { |v| canon(v) }
  when Hash then value.keys.map(&:to_s).sort.to_h { |k| [k, canon(value[k] || value[k.to_sym])] }
  when Symbol then value.to_s
  else "#{value.class}:#{value.inspect}"
  end
end

def rows(model, order)
  model.order(order).each_with_index.to_h do |record, n|
    key = record.has_attribute?(:id) && record.id ? record.id.to_s : n.to_s
    [key, record.attributes.transform_values { |v| canon(v) }]
  end
end

def attempt
  Item.transaction(requires_new: true) { canon(yield) }
rescue ActiveRecord::ActiveRecordError => e
  e.class.name
end

def observe
  clock = Time.utc(2000, 1, 1, 12, 34, 56)
  one = Item.find_by!(slug: "one")
  queries = {
    "pending_migrations" => ActiveRecord::Base.connection.migration_context.needs_migration?,
    "by_price" => Item.where(price: BigDecimal("0.01")).pluck(:slug),
    "by_price_range" => Item.where("price > ?", BigDecimal("7.00")).count,
    "by_precise" => Item.where(precise: BigDecimal("0.0000000001")).pluck(:slug),
    "by_day" => Item.where(day: Date.new(2024, 2, 29)).pluck(:slug),
    "by_at" => Item.where(at: Time.utc(2024, 2, 29, 12, 0, 0, 500000)).pluck(:slug),
    "by_at_range" => Item.where(at: Time.utc(2000, 1, 1)..).count,
    "by_clock" => Item.where(clock: clock).pluck(:slug),
    "by_bool" => Item.where(active: true).count,
    "maybe_null" => Item.where(maybe: nil).count,
    "enum" => [Item.draft.count, Item.published.pluck(:slug), Item.archived.first&.status],
    "order_price" => Item.order(price: :desc, id: :asc).pluck(:slug),
    "order_title" => Item.order(:title, :id).pluck(:slug),
    "order_at" => Item.order(:at).pluck(:slug),
    "aggregate" => canon([Item.sum(:price), Item.average(:num), Item.maximum(:at),
                          Item.minimum(:day), Item.joins(:tags).count, Item.sum(:big)]),
    "per_tag" => Tag.left_joins(:items).group(:name).order(:name).count(:item_id),
    "habtm" => one.tags.map(&:name).sort,
    "has_many" => Item.find_by!(slug: "two").notes.map(&:text),
    "json" => canon(Item.order(:id).map(&:data)),
    "by_json" => Item.where(doc: doc).pluck(:slug),
  }
  UIDS.each { |u| queries["by_uid #{u}"] = Item.where(uid: u).pluck(:slug) }
  ["10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1", "192.168.1.0/24"].each do |ip|
    queries["by_ip #{ip}"] = Item.where(ip: ip).pluck(:slug)
  end
  writes = {}
  Item.transaction do
    values = items[2].merge(slug: "new", title: "new", uid: "b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12")
    writes["new_item"] = attempt do
      item = Item.create!(values)
      item.reload
      [item.id, item.created_at.present?, item.status, item.active]
    end
    writes["new_tag_id"] = attempt { Tag.create!(name: "new").id }
    writes["dup_slug"] = attempt { Item.create!(values.merge(uid: UIDS[3].tr("a", "c"), slug: "one")) }
    writes["dup_uid"] = attempt { Item.create!(values.merge(slug: "u", uid: UIDS[0])) }
    writes["check"] = attempt { Item.create!(values.merge(slug: "c", uid: UIDS[3].tr("a", "d"), small: -2000)) }
    writes["dangling_fk"] = attempt { Note.create!(item_id: 999, text: "x").id }
    writes["update_json"] = attempt { Item.where(slug: "two").update_all(data: { "z" => 1 }.to_json) }
    writes["touch"] = attempt { one.touch(time: Time.utc(2030, 1, 1)) && one.reload.updated_at }
    writes["destroy"] = attempt { Item.find_by!(slug: "two").destroy && [Item.count, Note.count] }
    raise ActiveRecord::Rollback
  end
  { "rows" => { "tags" => rows(Tag, :id), "items" => rows(Item, :id), "notes" => rows(Note, :id),
                "items_tags" => rows(ItemTag, %i[item_id tag_id]) },
    "queries" => queries.transform_values { |v| canon(v) }, "writes" => writes }
end

url, command = ARGV
connect(url)
if command == "setup"
  ActiveRecord::Migration.verbose = false
  setup
else
  puts JSON.generate(observe)
end
